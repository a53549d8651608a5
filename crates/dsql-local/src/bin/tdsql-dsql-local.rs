//! dsql-local, the gateway binary (being written by the lead; this line keeps clippy's missing_docs quiet).
fn main() {}
