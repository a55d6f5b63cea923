static int loadavg_proc_show(struct seq_file *m, void *v)
{
	unsigned long avnrun[3];
	int i;

	/* avenrun is exported; get_avenrun(), nr_running() and nr_threads are not */
	for (i = 0; i < 3; i++)
		avnrun[i] = READ_ONCE(avenrun[i]) + FIXED_1 / 200;

	seq_printf(m, "%lu.%02lu %lu.%02lu %lu.%02lu 1/1 1\n",
		LOAD_INT(avnrun[0]), LOAD_FRAC(avnrun[0]),
		LOAD_INT(avnrun[1]), LOAD_FRAC(avnrun[1]),
		LOAD_INT(avnrun[2]), LOAD_FRAC(avnrun[2]));
	return 0;
}
