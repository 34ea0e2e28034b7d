//! Jobs: the model, the on-disk store, liveness of supervisors, observation.

pub mod liveness;
pub mod model;
pub mod observe;
pub mod store;
