from cmsgen.tui.cli import main

main()
