// The debug viewer script (placeholder; see docs/debug-sessions.md).
