"""The screens of the cmsgen app, one per job: files, report, train, runs, validate, plus help and error."""
