"""What the open-loop diagnostics in scripts/ share: a trained policy and its own training frames."""


def policy_and_frames(argv: list[str]):
    """``RUN POLICY DATASET [FILTER_KEY]`` → (policy name, policy, DemoDataset of its training frames with its
    horizon and target stride; FILTER_KEY is the robomimic filter key of the half it trained on)."""
    from pxp.experiment.data import DemoDataset, open_dataset
    from pxp.experiment.policy import load_policy

    run, name, dataset = argv[:3]
    path = f"{run}/data/{dataset}.hdf5"
    demos = None
    if len(argv) > 3:
        with open_dataset(path) as f:
            demos = f.filtered(argv[3])
    policy = load_policy(f"{run}/checkpoints/{name}")
    stride = policy.target_stride or 4  # checkpoints from before the stride was recorded used 4
    return name, policy, DemoDataset(path, horizon=policy.horizon, stride=stride, demos=demos)
