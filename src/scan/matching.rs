//! (built by the advisories slice)
