"""What a person looks at after a run: the annotated video and the HTML timeline of one
episode, the report of a run or a store, and the knowledge browser. Everything here reads
recordings and stores; nothing here plays or learns."""
