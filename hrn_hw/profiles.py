"""The training profiles (docs/design.md section 2b; docs/semantics.md "Training profiles").

A config's `profile:` sets the defaults of the HRN's training switches (`hrn:`); a switch the
config gives overrides its profile's value. `paper` is the paper's algorithms (HRNParams' own
defaults); `stable` adds the mechanisms that keep earlier tasks' routes and features. Only
training depends on the profile: inference, export and hardware never do. (No torch here: the
CLI reads these names cheaply.)
"""

PROFILE_SWITCHES = {
    "paper": {},
    "stable": {"basis_lock": True, "protect_units": True, "orthogonal_bases": True, "avoid_task_energy": 0.95},
}
PROFILES = tuple(PROFILE_SWITCHES)
DEFAULT_PROFILE = "stable"      # of a config file without `profile:`
STORED_PROFILE = "paper"        # of a stored config (checkpoint, results) from before profiles
TRAINING_SWITCHES = ("grad_scaling", "basis_update", "basis_lock", "protect_units", "orthogonal_bases",
                     "avoid_task_energy")
