"""The phases of one run, in the order of the paper's Section 2: prepare, warm up, adapt, evaluate, record.

Each phase is a module with explicit inputs and outputs (the `Plan` from prepare, the model it is
handed, the paths it returns), so a phase is the unit that can be cached, checkpointed, resumed or
spread over processes without reaching into another's state.
"""
