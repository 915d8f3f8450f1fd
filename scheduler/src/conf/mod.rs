//! Configuration in Kedro conventions: `conf/base` plus `conf/<env>`.

pub mod error;
pub mod interpolate;
pub mod project;
pub mod remote;
pub mod typed;
pub mod yaml;
