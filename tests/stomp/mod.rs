//! The STOMP client against the real ActiveMQ, scripted brokers and a
//! scripted TLS broker.

mod activemq;
mod fake_broker;
mod tls;
