"""Generated protobuf and gRPC code for the pilothouse.v1 schema (proto/)."""
