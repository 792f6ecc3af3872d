//! Shared by the relevance test and the relevance/bench examples.
#![allow(dead_code)]

pub mod kb;
pub mod relevance;
