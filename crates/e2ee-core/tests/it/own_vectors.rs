//! own_vectors
