from falconchat.cli.app import main

main()
