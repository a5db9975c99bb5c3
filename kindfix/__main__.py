from kindfix.cli import main

main()
