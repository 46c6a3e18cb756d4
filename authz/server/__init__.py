"""The gRPC edge: servicer (proto <-> commands), error mapping, create_server()."""
