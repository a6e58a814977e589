"""The Ray layer, the only one that imports Ray: the session, placement, the worker
group, node reduction, and the distributed operator; with the pure layout and thread
policies it applies."""
