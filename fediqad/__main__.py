from fediqad.cli import main

main()
