//! The configuration files sites have, read by the real binaries.

mod reference_files;
