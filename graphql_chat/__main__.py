from graphql_chat.cli import main

main()
