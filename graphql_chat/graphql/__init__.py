"""The GraphQL interface: Strawberry types, resolvers, loaders and the schema."""
