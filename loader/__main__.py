"""`python -m loader`: see loader.cli."""

from loader.cli import main

main()
