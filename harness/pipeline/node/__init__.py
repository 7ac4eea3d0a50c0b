"""The stage server: what runs inside a node to serve one partition."""
