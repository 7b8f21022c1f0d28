//! `ssmsend` end to end over STOMP (the test ActiveMQ) and AMS (the
//! `ams-double`), and its S/MIME output against the `openssl` CLI.

mod ams;
mod smime;
mod stomp;
