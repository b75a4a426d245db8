//! The process's wiring: the Lambda entrypoint, which stores and bundle storage a process
//! opens, the AWS SDK's configuration, logging and CloudWatch metrics.

pub mod aws;
pub mod backend;
pub mod emf;
pub mod identity;
pub mod lambda;
pub mod logging;
