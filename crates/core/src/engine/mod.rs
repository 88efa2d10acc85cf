//! The performance machinery, in one room: CPU time and peak memory of the process
//! ([`cpu`]), the allocator's tuning and the giving back of freed pages ([`memory`]).
//! The stages call these; none of them holds a tuning of its own.

pub mod cpu;
pub mod memory;
