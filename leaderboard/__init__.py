"""The static leaderboard site: collect and validate results, aggregate entries, render HTML and SVG."""
