//! Desired state rendered for another engine. Pure: a resolved spec in,
//! objects out; loading (the same as `apply`'s) and writing are
//! `reconcile::ops::export`'s.

pub mod kubevirt;
