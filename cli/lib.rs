//! thoth
