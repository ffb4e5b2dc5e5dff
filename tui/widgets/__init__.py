"""Reusable widgets of the cmsgen app: live loss panels, plots, the dataset tree and the run monitor."""
