//! The embedded price table: USD per region, each entry with its source and the date it was read.
//!
//! Only figures with a source are here; for any other region the command asks for the
//! `--price-*` overrides instead of guessing from a neighbour.

use serde::{Deserialize, Serialize};

/// Aurora DSQL's price in one region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DsqlPrice {
    pub(crate) region: &'static str,
    /// USD per 1,000,000 DPUs.
    pub(crate) per_million_dpu: f64,
    /// USD per GB-month of storage.
    pub(crate) per_gb_month: f64,
    pub(crate) source: &'static str,
    /// When the figures were read at the source (YYYY-MM-DD or YYYY-MM).
    pub(crate) as_of: &'static str,
}

/// DynamoDB on-demand (standard table class) in one region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DynamoDbPrice {
    pub(crate) region: &'static str,
    /// USD per 1,000,000 read request units.
    pub(crate) per_million_reads: f64,
    /// USD per 1,000,000 write request units.
    pub(crate) per_million_writes: f64,
    pub(crate) source: &'static str,
    pub(crate) as_of: &'static str,
}

/// The AWS page every figure below ultimately comes from.
pub(crate) const DSQL_PRICING_PAGE: &str = "https://aws.amazon.com/rds/aurora/dsql/pricing/";

const DSQL: [DsqlPrice; 2] = [
    DsqlPrice {
        region: "eu-west-1",
        per_million_dpu: 8.00,
        per_gb_month: 0.33,
        source: "project seed figures (issue #17), from the Aurora DSQL pricing page",
        as_of: "2026-12-03",
    },
    DsqlPrice {
        region: "us-east-1",
        per_million_dpu: 8.00,
        per_gb_month: 0.33,
        source: "Aurora DSQL pricing page as quoted for us-east-1 in \"Unraveling Aurora DSQL Pricing\" \
                 (blog.faridnsh.ninja)",
        as_of: "2026-04",
    },
];

const DYNAMODB: [DynamoDbPrice; 1] = [DynamoDbPrice {
    region: "us-east-1",
    per_million_reads: 0.125,
    per_million_writes: 0.625,
    source: "DynamoDB on-demand pricing for US East as quoted in \"Amazon DynamoDB Pricing\" (airbyte.com)",
    as_of: "2026-12-03",
}];

/// The embedded Aurora DSQL price of `region`, if one is known.
pub(crate) fn dsql(region: &str) -> Option<DsqlPrice> {
    DSQL.iter().find(|p| p.region == region).copied()
}

/// The embedded DynamoDB on-demand price of `region`, if one is known.
pub(crate) fn dynamodb(region: &str) -> Option<DynamoDbPrice> {
    DYNAMODB.iter().find(|p| p.region == region).copied()
}

/// Regions with an embedded Aurora DSQL price, for error messages.
pub(crate) fn dsql_regions() -> Vec<&'static str> {
    DSQL.iter().map(|p| p.region).collect()
}

/// The prices a bill is computed with, and where they came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Prices {
    /// USD per 1,000,000 DPUs.
    pub(crate) per_million_dpu: f64,
    /// USD per GB-month.
    pub(crate) per_gb_month: f64,
    /// `embedded table: <source> (as of <date>)` or `--price-dpu` / `--price-storage`.
    pub(crate) source: String,
}

/// Why no price could be settled on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnknownRegion {
    pub(crate) region: String,
}

impl std::fmt::Display for UnknownRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no embedded Aurora DSQL price for region `{}` (the table has {}); look the region up on {} and \
             pass --price-dpu USD_PER_MILLION_DPUS and --price-storage USD_PER_GB_MONTH",
            self.region,
            dsql_regions().join(", "),
            DSQL_PRICING_PAGE
        )
    }
}

impl std::error::Error for UnknownRegion {}

/// The region's embedded prices with the overrides applied; both overrides make the region's
/// entry unnecessary.
pub(crate) fn settle(
    region: &str,
    price_dpu: Option<f64>,
    price_storage: Option<f64>,
) -> Result<Prices, UnknownRegion> {
    let embedded = dsql(region);
    let (Some(per_million_dpu), Some(per_gb_month)) = (
        price_dpu.or(embedded.map(|p| p.per_million_dpu)),
        price_storage.or(embedded.map(|p| p.per_gb_month)),
    ) else {
        return Err(UnknownRegion { region: region.to_owned() });
    };
    let source = match (embedded, price_dpu, price_storage) {
        (_, Some(_), Some(_)) => "--price-dpu and --price-storage".to_owned(),
        (Some(p), None, None) => format!("embedded table for {}: {} (as of {})", p.region, p.source, p.as_of),
        (Some(p), Some(_), None) => {
            format!(
                "--price-dpu; storage from the embedded table for {}: {} (as of {})",
                p.region, p.source, p.as_of
            )
        }
        (Some(p), None, Some(_)) => {
            format!(
                "--price-storage; DPUs from the embedded table for {}: {} (as of {})",
                p.region, p.source, p.as_of
            )
        }
        (None, _, _) => unreachable!("both prices are set only with an embedded entry or both overrides"),
    };
    Ok(Prices { per_million_dpu, per_gb_month, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_region_has_the_seed_figures_and_a_source() {
        let prices = settle("eu-west-1", None, None).unwrap();
        assert_eq!((prices.per_million_dpu, prices.per_gb_month), (8.00, 0.33));
        assert!(prices.source.contains("as of 2026-12-03"), "{}", prices.source);
        for entry in DSQL {
            assert!(!entry.source.is_empty() && !entry.as_of.is_empty(), "{}", entry.region);
        }
    }

    #[test]
    fn an_unknown_region_asks_for_both_overrides_instead_of_guessing() {
        let err = settle("ap-south-2", None, None).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`ap-south-2`") && message.contains("--price-dpu"), "{message}");
        assert!(message.contains("--price-storage") && message.contains(DSQL_PRICING_PAGE), "{message}");
        assert_eq!(settle("ap-south-2", Some(9.0), None).unwrap_err(), err, "one override is not enough");
        let both = settle("ap-south-2", Some(9.0), Some(0.4)).unwrap();
        assert_eq!((both.per_million_dpu, both.per_gb_month), (9.0, 0.4));
        assert_eq!(both.source, "--price-dpu and --price-storage");
    }

    #[test]
    fn one_override_keeps_the_other_embedded_price() {
        let prices = settle("eu-west-1", Some(10.0), None).unwrap();
        assert_eq!((prices.per_million_dpu, prices.per_gb_month), (10.0, 0.33));
        assert!(prices.source.starts_with("--price-dpu; storage from"), "{}", prices.source);
    }
}
