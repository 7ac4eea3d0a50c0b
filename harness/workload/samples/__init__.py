"""Sample libraries (MLPerf LoadGen's QSL role): what each sensor replays, by plug-in.

A library is chosen by `workload.samples._target_` (a dotted path to a
`SampleLibrary` subclass) plus its kwargs, so adding a data set is one module
here and one config file in conf/workload/.
"""
