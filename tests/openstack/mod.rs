//! The OpenStack clients against the in-test mock, the simulator itself, and
//! the real cASO 5.2.2 against the simulator.

mod client;
mod sim;
mod sim_caso;
