"""The world around pgmove, for the demo, tests and benchmarks: throwaway PostgreSQL and Redis servers,
sample data, the strict local Slack stand-in. Product code never imports it, except cli's demo entry."""
