//! One `caso-extract` run: against the in-test OpenStack mock, against the
//! simulator's fault modes, and beside the real cASO 5.2.2 on the same data.

mod differential;
mod faults;
mod run;
