//! Project dev mode: turning a `pconnect.yml` into hub state and keeping it so. The pure parts
//! (model, plan) live in `pconnect_proto`; this is the IO around them.

pub mod actual;
pub mod apply;
pub mod control;
pub mod desired;
pub mod envfile;
pub mod reach;
