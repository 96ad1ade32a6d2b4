DROP TABLE stats_samples;
