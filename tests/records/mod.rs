//! The APEL messages: byte for byte against cASO 5.2.2's rendering, names
//! outside ASCII through the APEL server's parsers, and the rules cASO lacks.

mod names;
mod oracle;
mod rules;
