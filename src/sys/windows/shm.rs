//! Windows: named file mappings (being built).
