//! The fleet simulator (placeholder; filled in below).
