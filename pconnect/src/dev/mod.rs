//! Project dev mode: turning a `pconnect.yml` into hub state and keeping it so. The pure parts
//! (model, plan) live in `pconnect_proto`; this is the IO around them: [`desired`] (file -> what
//! the project wants), [`actual`] (hub -> what is), [`engine`] (applies the plan), [`up`] (the
//! running loop), [`apply`] (hub RPCs), [`reach`] (listeners), [`envfile`], [`control`].

pub mod actual;
pub mod apply;
pub mod control;
pub mod desired;
pub mod engine;
pub mod envfile;
pub mod reach;
pub mod up;
