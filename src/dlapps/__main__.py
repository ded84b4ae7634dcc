from dlapps.cli import main

main()
