//! TODO(wave 1): see the owning helper's task.
