//! `tdsql-ops cost`: what the Aurora DSQL cluster costs, measured from CloudWatch, and what a
//! workload will cost.

mod bill;
mod prices;
