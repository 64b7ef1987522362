"""HTTP plumbing shared by the interfaces: middleware, responses, health."""
