"""The typed GraphQL client generated from schema.graphql (see operations.graphql)."""
