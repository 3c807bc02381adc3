"""The research-use notice every output of leukosim carries (manifest, summary, parameter sets, CLI)."""

NOTICE = "Research use only. Not a medical device; not advice for any individual patient."
