from tests.moodle.rig import main

main()
