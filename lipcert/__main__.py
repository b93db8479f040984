"""`python -m lipcert` runs the command line."""

from lipcert.cli import app

if __name__ == "__main__":
    app()
