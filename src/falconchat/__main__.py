from falconchat.cli import main

main()
