"""The cmsgen terminal front end: the Textual app and the typer command line."""
