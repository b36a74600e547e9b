"""Reference points for the deep models: classical PCA + forest baselines and a downloadable
third-party age/gender model, evaluated on the same split and written in the same predictions
CSV contract, so ``facefair audit --compare`` puts them side by side."""
