//! (built by the indexer slice)
