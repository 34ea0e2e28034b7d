//! Jobs: what a front end asks for, the model, the on-disk store, liveness
//! of supervisors, observation.

pub mod define;
pub mod grants;
pub mod index;
pub mod liveness;
pub mod model;
pub mod observe;
pub mod request;
pub mod retention;
pub mod store;
